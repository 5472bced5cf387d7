"""``PlanError``: the one error planning raises (a plan that does not fit its model, or a request
no plan can satisfy); its own module so the registries below ``plan`` can raise it too."""


class PlanError(ValueError):
    """A plan that does not fit its model, or a request no plan can satisfy."""
