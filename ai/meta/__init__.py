"""The RL meta-strategy agent: which trading profile is active per (regime, symbol group).

- profiles: the menu (pure);
- bandit: the contextual bandit that chooses and learns, and the regime rule (pure numpy);
- env: the gymnasium environment over a position-outcome sampler, and offline training;
- services: the Django side (state and decisions in the database, choosing for inference,
  learning from `position.closed`).
"""
