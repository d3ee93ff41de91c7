import { displayValue, inputKind, parseParameters } from '../params';
import type { IParameter } from '../types';

const params: IParameter[] = [
  { name: 'n_rows', value: 50, type: 'int' },
  { name: 'learning_rate', value: 0.1, type: 'float' },
  { name: 'label', value: 'demo', type: 'str' },
  { name: 'verbose', value: false, type: 'bool' },
  { name: 'layers', value: [1, 2], type: 'list' }
];

describe('parameters form', () => {
  it('maps types to inputs and shows defaults', () => {
    expect(params.map(inputKind)).toEqual(['int', 'float', 'str', 'bool', 'json']);
    expect(params.map(displayValue)).toEqual(['50', '0.1', 'demo', false, '[1,2]']);
  });

  it('sends only edited values, typed', () => {
    const { values, errors } = parseParameters(params, { n_rows: '400', verbose: true, layers: '[3]', label: ' x ' });
    expect(errors).toEqual({});
    expect(values).toEqual({ n_rows: 400, verbose: true, layers: [3], label: ' x ' });
  });

  it('explains bad values', () => {
    const { values, errors } = parseParameters(params, { n_rows: '4.5', learning_rate: 'fast', layers: '[1,' });
    expect(values).toEqual({});
    expect(errors.n_rows).toBe("n_rows must be a whole number (got '4.5')");
    expect(errors.learning_rate).toContain('must be a number');
    expect(errors.layers).toContain('JSON literal');
  });
});
