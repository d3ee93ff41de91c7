/** #15: MLflow / Workflow links and the DAG's zoom arithmetic. */
import { contrastRatio, parseColor } from '../contrast';
import { fitScale, ZOOM_MAX, ZOOM_MIN, zoomStep } from '../dag';
import { mlflowRunUrl, safeLink } from '../links';

describe('mlflowRunUrl', () => {
  it('links a run under its experiment', () => {
    expect(mlflowRunUrl('http://127.0.0.1:5050', 'abc123', '7')).toBe('http://127.0.0.1:5050/#/experiments/7/runs/abc123');
  });
  it('uses the direct run route without an experiment id, and drops trailing slashes of the base', () => {
    expect(mlflowRunUrl('https://mlflow.example.com/team/', 'abc')).toBe('https://mlflow.example.com/team/#/runs/abc');
  });
  it('encodes the ids', () => {
    expect(mlflowRunUrl('http://h', 'a/b', 'x y')).toBe('http://h/#/experiments/x%20y/runs/a%2Fb');
  });
});

describe('safeLink', () => {
  it('keeps http(s) links', () => {
    expect(safeLink('https://argo.example.com/workflows/ns/wf')).toBe('https://argo.example.com/workflows/ns/wf');
  });
  it('refuses credentials, other schemes and non-URLs', () => {
    expect(safeLink('https://u:p@argo.example.com/x')).toBeNull();
    expect(safeLink('https://token@argo.example.com/x')).toBeNull();
    expect(safeLink('javascript:alert(1)')).toBeNull();
    expect(safeLink('not a url')).toBeNull();
    expect(safeLink(null)).toBeNull();
  });
});

describe('DAG zoom', () => {
  it('fits a wide DAG to the width and leaves a narrow one at 100 %', () => {
    expect(fitScale(500, 250)).toBe(0.5);
    expect(fitScale(200, 250)).toBe(1);
    expect(fitScale(10000, 250)).toBe(ZOOM_MIN);
    expect(fitScale(0, 250)).toBe(1);
  });
  it('zooms in and out by steps within the limits', () => {
    expect(zoomStep(1, 1)).toBe(1.25);
    expect(zoomStep(1.25, -1)).toBe(1);
    expect(zoomStep(ZOOM_MAX, 1)).toBe(ZOOM_MAX);
    expect(zoomStep(ZOOM_MIN, -1)).toBe(ZOOM_MIN);
    let s = 0.5;
    for (let i = 0; i < 3; i++) {
      s = zoomStep(s, 1);
    }
    expect(s).toBeCloseTo(0.976, 3);
  });
});

describe('text colours of #15 (style/base.css)', () => {
  const ratio = (fg: string, bg: string) => contrastRatio(parseColor(fg), parseColor(bg));
  it('the dark theme error text (--jp-error-color2) is >= 4.5:1 on the dark backgrounds; color1 was not', () => {
    expect(ratio('#e57373', '#212121')).toBeGreaterThanOrEqual(4.5);
    expect(ratio('#e57373', '#111111')).toBeGreaterThanOrEqual(4.5);
    expect(ratio('#f44336', '#212121')).toBeLessThan(4.5);
  });
  it('the light theme warning text (#b45309) is >= 4.5:1 on white; --jp-warn-color1 was not', () => {
    expect(ratio('#b45309', '#ffffff')).toBeGreaterThanOrEqual(4.5);
    expect(ratio('#f57c00', '#ffffff')).toBeLessThan(4.5);
  });
});
