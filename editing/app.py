"""The browser editor: ``python -m editing.app`` serves it at http://127.0.0.1:7860 (``port=``, ``host=``).

Pick a face (seed, random, or a latent ``.npz`` with ``w`` (N, num_ws, w_dim)), move the sliders (pitch, yaw,
roll, scale, tx, ty, the expression presets and each alpha; buttons for frontal and neutral), choose the linear
or gradient editor, transfer pose and expression from a photo, and download ``edited.npz`` and the PNG. The
generator, regressor and editing settings are those of the editing commands (conf/app.yaml, which shares
conf/editing/common.yaml); a missing regressor is built first (`editing.pipeline`). The page loads nothing
from outside the app. Needs the ``app`` extra (``pip install -e ".[app]"``).
"""

from __future__ import annotations

from typing import Any

import hydra
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import DictConfig

from common.cli import build, exit_on_user_error, launch
from common.errors import UserError
from editing.pipeline import compose_stage
from editing.session import load_generator, load_regressor


def build_session(cfg: DictConfig):
    """The `editing.app_session.EditorSession` of `cfg`: its generator, regressor (built when missing) and the
    landmark detector of the regressor's landmark type (conf/landmarks/<type>.yaml)."""
    from editing.app_session import EditorSession

    generator = load_generator(cfg)
    regressor = load_regressor(cfg, generator)
    detector_name = regressor.nrsfm.metadata.get("landmarks")
    try:
        detector_cfg = compose_stage("sample", [f"landmarks={detector_name}"]).landmarks
    except (MissingConfigException, ConfigCompositionException) as error:
        raise UserError(
            f"the regressor's landmarks {detector_name!r} have no detector config in conf/landmarks/; "
            "use a regressor trained with dlib, fan or mediapipe landmarks"
        ) from error
    session = EditorSession(cfg, generator, regressor, build(detector_cfg, "landmark detector"))
    session.choose_seed(cfg.seed)
    return session


def run(cfg: DictConfig) -> dict[str, Any]:
    """Serve the editor on ``cfg.host``:``cfg.port`` until interrupted; returns where it served."""
    try:
        import uvicorn

        from editing.app_server import create_app
    except ImportError as error:
        raise UserError(f'the app needs the app extra ({error.name} is missing); pip install -e ".[app]"') from error
    session = build_session(cfg)
    url = f"http://{cfg.host}:{cfg.port}"
    print(f"editing.app: serving {session.generator.name} faces at {url} (Ctrl+C stops)")
    uvicorn.run(
        create_app(session, int(cfg.max_upload_mb) * 2**20), host=str(cfg.host), port=int(cfg.port), log_level="warning"
    )
    return {"url": url}


@hydra.main(version_base="1.3", config_path="../conf", config_name="app")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        run(cfg)


if __name__ == "__main__":
    launch("editing.app", "app")
