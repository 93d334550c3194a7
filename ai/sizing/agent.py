"""The PPO sizing agent (stable-baselines3): training, checksummed save/load, and `decide`.

Artifacts reuse ai.forecasters.artifacts (metadata.json with sha256 of every file and of
itself): `<MODEL_ARTIFACTS_DIR>/rl_sizing/v<N>/` holds `ppo.zip` and the metadata; a corrupt
or mismatched artifact is refused at load (ArtifactError), and `decide` then falls back to
Kelly-only sizing. The newest valid version is the one used.

decide(): with a trained agent, its action (fraction of the allowed size) capped by the
fractional Kelly size and the policy's maximum position; with none, Kelly-only sizing:
agent_action is reported as 1.0 (no reduction by an agent), agent_trained False, and the
reason says so.
"""
from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np

from ai.forecasters.artifacts import ArtifactError, read_artifact, read_metadata, sha256_hex, write_artifact
from ai.sizing import kelly as kelly_mod
from ai.sizing.env import OBS_HIGH, OBS_LOW, OBS_NAMES, SizingEnv
from core.enums import SignalAction

MODEL_TYPE = "ppo_sizing"
FEATURE_VERSION = "rl-sizing-v1"
FEATURE_HASH = sha256_hex(("|".join(OBS_NAMES) + "|action=fraction_of_allowed").encode())
ARTIFACT_FILE = "ppo.zip"
NO_AGENT_REASON = "no trained agent: Kelly-only sizing"
KELLY_MODE_REASON = ("RL_SIZING_MODE=kelly: Kelly-only sizing (the PPO agent measured worse out of sample; "
                     "see the evaluation report's sizing section)")
DEFAULT_PAYOFF_RATIO = 1.0


@dataclass
class TrainedAgent:
    model: object  # stable_baselines3.PPO
    metadata: dict
    path: Path | None = None

    def act(self, obs: np.ndarray) -> float:
        action, _ = self.model.predict(np.asarray(obs, dtype=np.float32), deterministic=True)
        return float(np.clip(np.asarray(action, dtype=float).reshape(-1)[0], 0.0, 1.0))


def train(env: SizingEnv, *, timesteps: int = 20_000, seed: int = 0, net_arch: tuple[int, ...] = (32, 32),
          n_steps: int = 256, batch_size: int = 64, n_epochs: int = 4, learning_rate: float = 3e-4) -> TrainedAgent:
    """PPO with a small MLP; single-threaded CPU torch. Returns the trained agent (not saved)."""
    import torch
    from stable_baselines3 import PPO

    torch.set_num_threads(1)
    model = PPO("MlpPolicy", env, policy_kwargs={"net_arch": list(net_arch)}, n_steps=n_steps,
                batch_size=batch_size, n_epochs=n_epochs, learning_rate=learning_rate, seed=seed, verbose=0,
                device="cpu")
    model.learn(total_timesteps=timesteps)
    meta = {"timesteps": int(timesteps), "seed": int(seed), "net_arch": list(net_arch), "n_steps": n_steps,
            "horizon": env.horizon, "fee_rate": env.fee_rate, "drawdown_penalty": env.drawdown_penalty}
    return TrainedAgent(model=model, metadata=meta)


def save(agent: TrainedAgent, directory: str | Path, *, extra: dict | None = None) -> dict:
    """Write the agent as a checksummed artifact into `directory` (must not exist or be empty)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ARTIFACT_FILE
        agent.model.save(str(path))
        data = path.read_bytes()
    meta = {"model_type": MODEL_TYPE, "feature_version": FEATURE_VERSION, "feature_hash": FEATURE_HASH,
            "params": agent.metadata, **(extra or {})}
    written = write_artifact(directory, {ARTIFACT_FILE: data}, meta)
    agent.path = Path(directory)
    agent.metadata = {**agent.metadata, **written}
    return written


def load(directory: str | Path) -> TrainedAgent:
    """Load an artifact written by save(); ArtifactError when corrupt or not a sizing agent."""
    from stable_baselines3 import PPO

    meta, files = read_artifact(directory, expected_feature_version=FEATURE_VERSION,
                                expected_feature_hash=FEATURE_HASH, expected_model_type=MODEL_TYPE)
    model = PPO.load(io.BytesIO(files[ARTIFACT_FILE]), device="cpu")
    return TrainedAgent(model=model, metadata=meta, path=Path(directory))


def agents_dir() -> Path:
    from django.conf import settings

    return Path(getattr(settings, "MODEL_ARTIFACTS_DIR", "") or Path(settings.VAR_DIR) / "models") / "rl_sizing"


def next_version_dir(root: Path | None = None) -> Path:
    root = root or agents_dir()
    versions = [int(p.name[1:]) for p in root.glob("v*") if p.name[1:].isdigit()] if root.exists() else []
    return root / f"v{max(versions, default=0) + 1}"


_cache: dict[str, tuple[str, TrainedAgent]] = {}


def latest_agent(root: Path | None = None) -> TrainedAgent | None:
    """The newest loadable agent under `root` (cached per process by its checksum); None if none."""
    root = root or agents_dir()
    if not root.exists():
        return None
    candidates = sorted((p for p in root.glob("v*") if p.name[1:].isdigit()), key=lambda p: -int(p.name[1:]))
    for path in candidates:
        try:
            checksum = read_metadata(path).get("artifact_sha256", "")
            cached = _cache.get(str(path))
            if cached and cached[0] == checksum:
                return cached[1]
            agent = load(path)
        except ArtifactError:
            continue  # corrupt or mismatched: the previous version (or Kelly-only) serves
        _cache[str(path)] = (checksum, agent)
        return agent
    return None


def decide(symbol: str, probability_up: float, volatility: float, drawdown: float, exposure: float,
           recent_pnl: float, equity_usd, allowed_size_usd, payoff_ratio: float = DEFAULT_PAYOFF_RATIO, *,
           action: str | None = None, agent: TrainedAgent | None = None, max_position_usd=None,
           kelly_multiplier: float = kelly_mod.DEFAULT_KELLY_FRACTION,
           max_kelly_fraction: float = kelly_mod.DEFAULT_MAX_FRACTION, no_agent_reason: str = NO_AGENT_REASON) -> dict:
    """An RlDecision payload (dict) for one signal. `action` defaults to the side of probability_up."""
    p_up = float(np.clip(probability_up, 0.0, 1.0))
    if action is None:
        action = SignalAction.BUY if p_up > 0.5 else SignalAction.SELL if p_up < 0.5 else SignalAction.HOLD
    p_win = p_up if action == SignalAction.BUY else 1.0 - p_up
    k = kelly_mod.kelly_fraction(p_win, payoff_ratio, fraction=kelly_multiplier, max_fraction=max_kelly_fraction)
    if agent is not None:
        obs = np.clip(np.array([p_win, volatility, drawdown, exposure, recent_pnl], dtype=float), OBS_LOW, OBS_HIGH)
        agent_action = agent.act(obs.astype(np.float32))
        reason = (f"PPO agent chose {agent_action:.3f} of the allowed size; capped by fractional Kelly "
                  f"{k:.4f} of equity (p={p_win:.3f}, b={payoff_ratio:.3f}) and the policy")
    else:
        agent_action = 1.0
        reason = no_agent_reason
    if action == SignalAction.HOLD:
        size = Decimal("0.00")
        reason = f"{reason}; signal is HOLD: no position"
    else:
        size = kelly_mod.final_size_usd(agent_fraction=agent_action, allowed_size_usd=allowed_size_usd, kelly=k,
                                        equity_usd=equity_usd, max_position_usd=max_position_usd)
        if k == 0.0:
            reason = f"{reason}; no Kelly edge (p={p_win:.3f} <= {kelly_mod.breakeven_probability(payoff_ratio):.3f})"
    return {"symbol": symbol, "action": action, "agent_action": agent_action, "kelly_fraction": k,
            "final_size_usd": size, "agent_trained": agent is not None, "reason": reason[:2000]}
