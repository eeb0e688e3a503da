"""Synthetic abdominal CT with liver and tumour labels, so that everything runs without private
data: :func:`livseg.phantom.generator.make_phantom` / ``write_phantoms`` assemble a case from
``anatomy`` (body, diaphragm, signed-distance fields, grids), ``liver`` (procedural or real-mask
livers), ``organs`` (neighbouring organs, vessels, tumours, contrast) and ``render`` (HU values,
noise). Depends on :mod:`livseg.data.io` only.
"""
