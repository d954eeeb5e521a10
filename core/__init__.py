"""What every part of the NBO service needs: settings, the product catalogue, suitability.

Nothing here imports ``features``, ``training``, ``registry`` or ``service``.
"""
