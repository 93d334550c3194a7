"""Risk services (writes): the policy store, system modes, validation of intents, the safety
governor and the emergency stop. Reads live in risk/selectors.py; the rules themselves in the
pure core risk/domain/."""
