/** WCAG 2 contrast of CSS colours (`#rrggbb`, `#rgb`, `rgb()`/`rgba()` as getComputedStyle gives them). */

export type RGB = [number, number, number];

/** Parse a colour; an rgba() with alpha < 1 is composited over `under` (default white). */
export function parseColor(text: string, under: RGB = [255, 255, 255]): RGB {
  const t = text.trim().toLowerCase();
  let m = /^#([0-9a-f]{3})$/.exec(t);
  if (m) {
    return [0, 1, 2].map(i => parseInt(m![1][i] + m![1][i], 16)) as RGB;
  }
  m = /^#([0-9a-f]{6})$/.exec(t);
  if (m) {
    return [0, 2, 4].map(i => parseInt(m![1].slice(i, i + 2), 16)) as RGB;
  }
  m = /^rgba?\(([^)]+)\)$/.exec(t);
  if (m) {
    const parts = m[1].split(/[\s,/]+/).filter(Boolean).map(Number);
    const alpha = parts.length > 3 ? parts[3] : 1;
    return [0, 1, 2].map(i => Math.round(parts[i] * alpha + under[i] * (1 - alpha))) as RGB;
  }
  throw new Error(`not a colour: '${text}'`);
}

function luminance([r, g, b]: RGB): number {
  const lin = (v: number) => {
    const c = v / 255;
    return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
  };
  return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
}

/** Contrast ratio (1..21) of two colours. */
export function contrastRatio(fg: RGB, bg: RGB): number {
  const [a, b] = [luminance(fg), luminance(bg)].sort((x, y) => y - x);
  return (a + 0.05) / (b + 0.05);
}
