# The environment's MLflow tracker for the test cluster: MLflow (the venv's version), the
# PostgreSQL driver and boto3 (S3 artifacts) on Scanflow's offline Debian base. Non-root.
ARG BASE
FROM ${BASE}
ARG MLFLOW_VERSION
# the host's extra CA certificates (a TLS-inspecting proxy): cluster.sh copies them into ca/
COPY ca/ /usr/local/share/ca-certificates/
ENV REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN update-ca-certificates >/dev/null \
    && pip install --no-cache-dir "mlflow==${MLFLOW_VERSION}" "psycopg2-binary>=2.9,<3" "boto3>=1.34,<2" \
    && useradd --uid 1000 --user-group --home-dir /tmp --no-create-home --shell /bin/sh scanflow
ENV HOME=/tmp USER=scanflow LOGNAME=scanflow PYTHONUNBUFFERED=1
USER 1000
WORKDIR /tmp
EXPOSE 5000
CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000"]
