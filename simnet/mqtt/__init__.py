"""Real transport over MQTT: the same packets as the simulator, between hosts, through a broker."""
