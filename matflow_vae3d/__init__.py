"""matflow-vae3d: fingerprint polycrystal volume elements with a 3D ResNet VAE,
simulate their uniaxial-tension response with crystal plasticity, and learn a
fingerprint-to-stress surrogate; a MatFlow plugin.

Data flow (one way): VE -> (fingerprint, CP stress) -> surrogate.
"""

__version__ = "0.1.0"
