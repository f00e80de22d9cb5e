"""``print_trainable_parameters`` for every PEFT wrapper: one place that counts, as PEFT counts."""
from __future__ import annotations

from ..nn.quantized import quantized_weight_count


class TrainableCounts:
    """Mixin: (trainable, all) parameter counts and PEFT's one-line report of them.

    'all' is every parameter the model holds (adapters and the trainable copies of saved modules included),
    plus the weights a ``QuantizedLinear`` keeps in blocks: they are weights of the model even though they
    are not ``Parameter``s (PEFT counts a 4-bit bitsandbytes weight too).
    """

    def get_nb_trainable_parameters(self):
        sizes = [(p.size, p.requires_grad) for _, p in self.named_parameters()]
        return sum(n for n, trains in sizes if trains), sum(n for n, _ in sizes) + quantized_weight_count(self)

    def print_trainable_parameters(self):
        trainable, total = self.get_nb_trainable_parameters()
        print(f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}")
