"""Few-shot meta-learning (`hydranet meta`): episodes, the meta-learners of `meta.method` and their own outer loop,
beside the trainer rather than inside it, because the loop has another shape (an inner adaptation per task).
"""
