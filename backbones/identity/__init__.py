"""Identity networks: face-recognition embeddings for identity losses (see `base.IdentityNetwork`).

Implementations: `dlib_identity.DlibIdentity` (dlib's ResNet, offline default),
`arcface.ArcFaceIdentity` (insightface ONNX models), `none.NoIdentity`. Hydra group `conf/identity/`.
"""
