/**
 * sRGB (0-255) to DICOM's Recommended Display CIELab Value (PS3.3 C.10.7.1.1: L* 0..100 to
 * 0..65535, a* and b* -128..127 to 0..65535), D65 white: the arithmetic of models/ldfsam_models
 * manifest.py `rgb_to_dicom_lab`, so a colour the user picks is written as the exporter writes one.
 */
export function rgbToDicomLab(rgb: readonly [number, number, number]): [number, number, number] {
  const lin = (c: number) => {
    const v = c / 255;
    return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
  };
  const [r, g, b] = rgb.map(lin) as [number, number, number];
  const x = (0.4124564 * r + 0.3575761 * g + 0.1804375 * b) / 0.95047;
  const y = 0.2126729 * r + 0.7151522 * g + 0.072175 * b;
  const z = (0.0193339 * r + 0.119192 * g + 0.9503041 * b) / 1.08883;
  const f = (t: number) => (t > (6 / 29) ** 3 ? Math.cbrt(t) : t / (3 * (6 / 29) ** 2) + 4 / 29);
  const L = 116 * f(y) - 16;
  const a = 500 * (f(x) - f(y));
  const bb = 200 * (f(y) - f(z));
  return [Math.round((L * 65535) / 100), Math.round(((a + 128) * 65535) / 255), Math.round(((bb + 128) * 65535) / 255)];
}
