"""Inference for users: :class:`~dynpath.inference.localizer.Localizer` localizes a sentence in a
video with a trained model (the CLI's ``dynpath localize``, Python callers and the MLflow pyfunc
model share it). Submodules are imported explicitly so that importing the package stays cheap.
"""
