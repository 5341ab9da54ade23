"""Audits of models mia_bench did not train (`mia-bench audit-release`): the user's released samples,
generator, discriminator or training recipe, scored against their own training and hold-out records."""
