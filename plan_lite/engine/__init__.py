"""Training, prediction and experiments (book/design_decisions.md#dd-training, #dd-inference).

Light package: import the submodules directly (``plan_lite.engine.train``, ``.predict``, ``.experiment``,
``.checkpoint``, ``.sampler``, ``.distributed``, ``.training_data``).

Multi-GPU: ``torchrun --nproc_per_node=4 -m plan_lite.cli train DATA --preset paper --out runs/paper``.
"""

__all__ = ["checkpoint", "distributed", "experiment", "predict", "sampler", "train", "training_data"]
