"""Meta-learning methods (`meta.method`), registered under the `meta` kind.

A method is built as `Method(options, net, problem)` and offers, duck-typed:
- `head`: "ways" (a linear head with one output per episode class, or one for regression), "classes" (one per
  meta-train class) or "none" (the trunk's embedding is the output);
- `extra_parameters(net) -> {name: tensor}`: meta-parameters beyond the network's (Meta-SGD's learning rates);
- `meta_gradient(params, episodes) -> (loss, grads)`: the outer gradient of one meta-batch;
- `predict(params, episodes) -> (T, Q, out)`: query predictions after adapting to each support set.
"""

from hydranet.meta.methods import finetune, gradient, protonet  # noqa: F401  (importing registers the built-ins)
