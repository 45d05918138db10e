"""The network model: elements (`elements`), loss models (`loss_models`), the channel's
configuration (`config`) and their wiring into one simulated pass (`channel`).

Knows nothing of images or tokens: it carries byte strings.
"""
