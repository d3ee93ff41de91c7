# PostgreSQL 15 from Debian's packages on Scanflow's offline Debian base, run as the postgres
# user (uid 999). The data lives in $PGDATA (a directory the entrypoint creates inside the
# volume mounted at /var/lib/postgresql/data); the first start initialises it with the database
# $POSTGRES_DB owned by $POSTGRES_USER whose password is $POSTGRES_PASSWORD (scram-sha-256).
ARG BASE
FROM ${BASE}
RUN groupadd --gid 999 postgres \
    && useradd --uid 999 --gid 999 --home-dir /var/lib/postgresql --shell /bin/sh postgres \
    && printf 'create_main_cluster = false\n' >/tmp/createcluster.conf \
    && mkdir -p /etc/postgresql-common && mv /tmp/createcluster.conf /etc/postgresql-common/createcluster.conf \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
    && mkdir -p /var/lib/postgresql/data && chown -R 999:999 /var/lib/postgresql
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint
ENV PATH=/usr/lib/postgresql/15/bin:/usr/sbin:/usr/bin:/sbin:/bin PGDATA=/var/lib/postgresql/data/pgdata \
    HOME=/var/lib/postgresql LANG=C.UTF-8
USER 999
EXPOSE 5432
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint"]
