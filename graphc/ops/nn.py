"""PLACEHOLDER: being written."""
def _todo(*a, **k): raise NotImplementedError
avg_pool2d = batch_norm = conv1d = conv2d = dropout = embedding = global_avg_pool2d = global_max_pool2d = max_pool2d = one_hot = softmax_cross_entropy = _todo
