"""The Keras CIFAR-10 CNN tutorial, in hydranet: build the CNN, compile, fit 10 epochs, evaluate.

    python examples/seed_cnn.py [--epochs 10] [--data ../shared/data/cifar10-jpg.tar.gz]
"""

import argparse

import hydranet as hn

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--data", default="../shared/data/cifar10-jpg.tar.gz")
parser.add_argument("--limit", type=int, default=None, help="use only this many images (quick check)")
args = parser.parse_args()

experiment = hn.Experiment({
    "name": "seed-cnn",
    # (train_images, train_labels), (test_images, test_labels) = datasets.cifar10.load_data(); images / 255.0
    "data": {"source": "image_folder", "path": args.data, "split": {"val": 0.0}, "normalize": False, "limit": args.limit},
    "tasks": {"label": {"kind": "classification"}},
    # Conv2D(32, 3, relu) → MaxPool → Conv2D(64, 3, relu) → MaxPool → Flatten → Dense(64, relu) → Dense(10)
    "model": {"trunk": {"name": "cnn", "channels": [32, 64], "kernel_size": 3, "padding": "valid", "dense": [64]}},
    # compile(optimizer='adam', loss=SparseCategoricalCrossentropy(from_logits=True)); fit(epochs=10, batch_size=32)
    "train": {"epochs": args.epochs, "batch_size": 32, "optimizer": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0}},
})
run = experiment.fit(progress=True)

model = hn.load(run.dir)  # model.evaluate(test_images, test_labels)
test = model.evaluate("test")
print(f"test accuracy {test['label']['accuracy']:.4f}  ({run.summary['train_seconds']:.0f}s, run in {run.dir})")
