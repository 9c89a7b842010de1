# A small ResNet written straight with Keras's functional API, as a notebook writes it: a stem,
# an identity block, a projection block (strides 2) and an identity block. Read by cnnlab's
# importer (never run by it); run by benchmarks/keras_layer_reference.py for Keras's figures.
import keras
from keras import layers

num_classes = 10

inputs = keras.Input(shape=(32, 32, 3))
x = layers.Conv2D(16, (3, 3), padding="same")(inputs)
x = layers.BatchNormalization()(x)
x = layers.Activation("relu")(x)

y = layers.Conv2D(16, (3, 3), padding="same")(x)
y = layers.BatchNormalization()(y)
y = layers.Activation("relu")(y)
y = layers.Conv2D(16, (3, 3), padding="same")(y)
y = layers.BatchNormalization()(y)
x = layers.Add()([y, x])
x = layers.Activation("relu")(x)

y = layers.Conv2D(32, (3, 3), strides=2, padding="same")(x)
y = layers.BatchNormalization()(y)
y = layers.Activation("relu")(y)
y = layers.Conv2D(32, (3, 3), padding="same")(y)
y = layers.BatchNormalization()(y)
shortcut = layers.Conv2D(32, (1, 1), strides=2)(x)
shortcut = layers.BatchNormalization()(shortcut)
x = layers.add([y, shortcut])
x = layers.Activation("relu")(x)

y = layers.SeparableConv2D(32, (3, 3), padding="same")(x)
y = layers.BatchNormalization()(y)
x = layers.Add()([x, y])
x = layers.Activation("swish")(x)

x = layers.GlobalAveragePooling2D()(x)
outputs = layers.Dense(num_classes, activation="softmax")(x)
model = keras.Model(inputs, outputs, name="small_resnet")
model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
