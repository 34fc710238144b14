"""`SyntheticGenerator`: a differentiable 3D face renderer behind the StyleGAN generator interface,
which also reports the ground truth it rendered.

Pipeline of `synthesis(ws)`: ws (B, 6, w_dim) -> scene parameters (`scene.SceneDecoder`; row g of ws
drives parameter group g, see `backbones.synthetic.scene`) -> head mesh with identity and
expression blend shapes (`face_model`) -> rotation R = Rz Ry Rx of (pitch, yaw, roll)
(`nrsfm.geometry`) -> scaled orthographic projection -> z-buffered rasterization with fixed
visibility and differentiable barycentrics (`rasterizer`) -> textured (with the portrait's own
shading divided out, `face_model`), recoloured, Lambert-shaded pixels over a gradient background
(`shading`) -> (B, 3, R, R) in [-1, 1].

Projection: a face-frame point p maps to pixel s * R (R p)[:2] + centre, with s the inter-ocular
distance as a fraction of the width and centre = R * ((0.5, 0.42) + translation); pixel centres are
at integer coordinates (dlib's convention). `noise_mode` is accepted for interface compatibility
and ignored: the renderer has no noise inputs.
"""

from __future__ import annotations

import torch

from backbones.generator import Generator
from backbones.synthetic.face_model import NUM_LANDMARKS, build_face_mesh
from backbones.synthetic.rasterizer import composite, interpolate, rasterize
from backbones.synthetic.scene import NUM_CALIBRATION, NUM_WS, MappingNetwork, SceneDecoder, SceneParameters
from backbones.synthetic.shading import (
    apply_tone,
    background_gradient,
    lambert,
    sample_texture,
    tone_map,
    vertex_normals,
)
from common.shapes import check_finite, check_shape
from nrsfm.geometry import euler_angles_to_matrix

NOISE_MODES = ("const", "random", "none")
# Where the midpoint between the eyes lands, as fractions of the image size (x, y).
EYES_CENTRE = (0.5, 0.42)


class SyntheticGenerator(Generator):
    """The embedded default generator (`generator=synthetic`).

    Args:
        img_resolution: output size R in pixels (32..1024).
        z_dim, w_dim: latent sizes.
        num_mapping_layers: depth of the z -> w mapping network.
        decoder_hidden: width of the per-row scene heads.
        head_depth: depth of the back of the head behind the eyes (`face_model.build_face_mesh`).
        seed: seeds every fixed random weight; the same seed gives the same generator.
    """

    name = "synthetic"

    def __init__(
        self,
        img_resolution: int = 256,
        z_dim: int = 64,
        w_dim: int = 64,
        num_mapping_layers: int = 4,
        decoder_hidden: int = 64,
        seed: int = 0,
        head_depth: float = 2.7,
    ):
        super().__init__()
        for label, value, low, high in (
            ("img_resolution", img_resolution, 32, 1024),
            ("z_dim", z_dim, 1, 4096),
            ("w_dim", w_dim, 1, 4096),
            ("num_mapping_layers", num_mapping_layers, 1, 16),
            ("decoder_hidden", decoder_hidden, 1, 4096),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"generator.{label} must be an integer in [{low}, {high}], got {value!r}")
        self.img_resolution = img_resolution
        self.z_dim, self.w_dim, self.num_ws = z_dim, w_dim, NUM_WS
        weights = torch.Generator().manual_seed(int(seed))
        self.mapping_network = MappingNetwork(z_dim, w_dim, num_mapping_layers, weights)
        self.decoder = SceneDecoder(w_dim, decoder_hidden, weights)
        mesh = build_face_mesh(seed=seed, head_depth=head_depth)
        for key in ("vertices", "faces", "uv", "identity_basis", "expression_basis", "texture"):
            self.register_buffer(key, getattr(mesh, key))
        self.register_buffer("region_weights", torch.stack([mesh.skin_weight, mesh.hair_weight], -1))
        self.register_buffer("delighting", mesh.delighting)
        self.register_buffer("w_avg", torch.zeros(w_dim))
        with torch.no_grad():
            calibration_z = torch.randn(NUM_CALIBRATION, z_dim, generator=weights)
            calibration_w = self.mapping_network(calibration_z)
            self.w_avg.copy_(calibration_w.mean(0))
            self.decoder.calibrate(calibration_w[:, None].expand(-1, NUM_WS, -1))
        self.freeze()

    def mapping(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        """z (B, z_dim) -> ws (B, num_ws, w_dim), truncated toward `w_avg` by `truncation_psi`."""
        check_shape(z, ("B", self.z_dim), "z latent")
        check_finite(z, "z latent")
        if not 0.0 <= float(truncation_psi) <= 2.0:
            raise ValueError(f"truncation_psi must lie in [0, 2], got {truncation_psi}")
        w = self.mapping_network(z.to(self.w_avg.dtype))
        w = self.w_avg + truncation_psi * (w - self.w_avg)
        return w[:, None, :].repeat(1, self.num_ws, 1)  # a real copy per row: W+ edits may write rows in place

    def scene(self, ws: torch.Tensor) -> SceneParameters:
        """ws (B, num_ws, w_dim) -> the physical scene parameters it renders."""
        check_shape(ws, ("B", self.num_ws, self.w_dim), "ws")
        check_finite(ws, "ws")
        return self.decoder(ws.to(self.w_avg.dtype))

    def posed_vertices(self, params: SceneParameters) -> tuple[torch.Tensor, torch.Tensor]:
        """Mesh in camera space: (B, V, 3) face-frame vertices after blend shapes and rotation, and
        (B, V, 2) their pixel positions."""
        shape = (
            self.vertices
            + torch.einsum("bi,ivc->bvc", params.identity, self.identity_basis)
            + torch.einsum("be,evc->bvc", params.expression, self.expression_basis)
        )
        rotation = euler_angles_to_matrix(torch.deg2rad(params.rotation_deg))
        rotated = shape @ rotation.transpose(-1, -2)
        size = float(self.img_resolution)
        centre = size * (rotated.new_tensor(EYES_CENTRE) + params.translation)
        screen = size * params.scale[:, None, None] * rotated[..., :2] + centre[:, None, :]
        return rotated, screen

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        """ws (B, num_ws, w_dim) -> images (B, 3, R, R) in [-1, 1]; `noise_mode` is ignored."""
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {', '.join(NOISE_MODES)}, got {noise_mode!r}")
        return self.render(self.scene(ws))

    def render(self, params: SceneParameters) -> torch.Tensor:
        """Scene parameters of a batch of B -> images (B, 3, R, R) in [-1, 1] (for sweeps and figures)."""
        rotated, screen = self.posed_vertices(params)
        size = self.img_resolution
        triangle_ids = rasterize(screen.detach(), rotated[..., 2].detach(), self.faces, size, size)
        shading = (
            lambert(vertex_normals(rotated, self.faces), params.light_direction, params.ambient, params.light_gain)
            * self.delighting
        )
        num_batch = screen.shape[0]
        vertex_values = torch.cat(
            [self.uv.expand(num_batch, -1, -1), self.region_weights.expand(num_batch, -1, -1), shading[..., None]], -1
        )
        fragments = interpolate(screen, vertex_values, self.faces, triangle_ids)
        uv, regions, shade = fragments.values.split([2, 2, 1], -1)
        albedo = sample_texture(self.texture, uv)
        colours = apply_tone(albedo, regions[:, 0], regions[:, 1], params.appearance[fragments.batch_index]) * shade
        image = composite(tone_map(colours), fragments, background_gradient(params.background, size, size))
        return image * 2.0 - 1.0

    def ground_truth(self, ws: torch.Tensor) -> dict[str, torch.Tensor]:
        """What `synthesis(ws)` renders.

        Returns:
            rotation_deg (B, 3) pitch, yaw, roll in degrees (R = Rz Ry Rx, x right, y down, z away);
            expression (B, 5) in the order of `face_model.EXPRESSION_NAMES`; identity (B, 16) in the
            order of `face_model.IDENTITY_NAMES`; appearance (B, 6) skin and hair colour;
            landmarks (B, 68, 2) iBUG landmark pixels (x, y), pixel centres at integers, including
            landmarks hidden behind the head.
        """
        params = self.scene(ws)
        _, screen = self.posed_vertices(params)
        return {
            "rotation_deg": params.rotation_deg,
            "expression": params.expression,
            "identity": params.identity,
            "appearance": params.appearance,
            "landmarks": screen[:, :NUM_LANDMARKS],
        }

    def sample(self, num_samples: int, seed: int | None = None, truncation_psi: float = 1.0) -> torch.Tensor:
        """`num_samples` ws (num_samples, num_ws, w_dim) drawn from seeds seed, seed+1, ... (0 if None)."""
        if num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}")
        first = int(seed) if seed is not None else 0
        return self.mapping(self.z_from_seeds(range(first, first + num_samples)), truncation_psi)


def build_synthetic_generator(**options) -> SyntheticGenerator:
    """Hydra target of `conf/generator/synthetic.yaml`: a ready, frozen generator. `name` must be
    "synthetic"; unknown option names raise a one-line ValueError listing the known ones."""
    known = ("name", "img_resolution", "z_dim", "w_dim", "num_mapping_layers", "decoder_hidden", "seed", "head_depth")
    name = options.pop("name", SyntheticGenerator.name)
    if name != SyntheticGenerator.name:
        raise ValueError(f"generator.name must be {SyntheticGenerator.name!r} for this generator, got {name!r}")
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(
            f"unknown generator=synthetic option(s) {', '.join(unknown)}; known options: {', '.join(known)}"
        )
    return SyntheticGenerator(**options)
