"""The continuous learning manager: outcome store, drift, retraining jobs, challenger against champion, quarantine."""
