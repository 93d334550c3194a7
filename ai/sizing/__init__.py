"""RL position sizing: fractional Kelly caps, a gymnasium environment over the
paper market, a PPO agent (stable-baselines3), the rl.decision service and its experience store."""
