import time


def wait_for(predicate, timeout: float, poll: float = 0.05):
    """Poll `predicate` until it returns something truthy or `timeout` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    return predicate()
