// erf with ~1 ulp float32 error (the rational approximation XLA and Eigen use), clamped where it saturates.
// ERF_T (f32 or vec4f) is aliased by the kernel that appends this file.
fn erf_f32(v: ERF_T) -> ERF_T {
  let x = clamp(v, ERF_T(-4.0), ERF_T(4.0));
  let x2 = x * x;
  var a = x2 * -2.72614225801306e-10 + 2.77068142495902e-08;
  a = a * x2 + -2.10102402082508e-06;
  a = a * x2 + -5.69250639462346e-05;
  a = a * x2 + -7.34990630326855e-04;
  a = a * x2 + -2.95459980854025e-03;
  a = a * x2 + -1.60960333262415e-02;
  a = a * x;
  var b = x2 * -1.45660718464996e-05 + -2.13374055278905e-04;
  b = b * x2 + -1.68282697438203e-03;
  b = b * x2 + -7.37332916720468e-03;
  b = b * x2 + -1.42647390514189e-02;
  return a / b;
}
