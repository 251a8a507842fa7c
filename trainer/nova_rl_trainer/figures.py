"""Saving a plot: shared by every layer that draws one (the training
curves of :mod:`~nova_rl_trainer.learning.report`, the evaluation and
decision reports of :mod:`~nova_rl_trainer.publishing`), so it sits below
them all, beside :mod:`nova_rl_weigher.fileio` whose writer it uses."""

from __future__ import annotations

import io

from nova_rl_weigher import fileio


def save_figure(fig, path: str) -> None:
    """Save ``fig`` as a PNG at ``path`` (100 dpi) and close it.

    The image is rendered in memory first and then replaced whole with
    :func:`nova_rl_weigher.fileio.atomic_write`: matplotlib writes a path
    in place, so a failure while rendering, or a reader of the previous
    plot, would meet a truncated PNG.
    """
    from matplotlib import pyplot as plt
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format='png', dpi=100)
    finally:
        plt.close(fig)
    fileio.atomic_write(path, buf.getvalue())
