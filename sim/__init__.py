"""The simpy engine, the serving loop, the event log and the metrics computed from it."""
