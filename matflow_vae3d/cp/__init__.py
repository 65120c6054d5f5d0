"""Crystal plasticity: load cases, material presets, the DAMASK_grid driver and
the embedded spectral solver."""
