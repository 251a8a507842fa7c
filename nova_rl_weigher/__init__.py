"""nova-rl-weigher: a learned host weigher for the OpenStack Nova scheduler.

Data flow: :mod:`features` -> :mod:`policy` -> :mod:`gate` -> weights, driven
by :mod:`scorer` and adapted to Nova by :mod:`weigher`. Importing this
package (or the weigher) never imports torch.
"""
