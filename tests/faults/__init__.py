"""End-to-end fault tests: the real daemon, a real mosquitto, simulated ports."""
