# Seed notebook, "Model-11: 7 Conv-Layers, dropout, Max-pooling with 7*7 kernel with Ba[tch
# normalization]" (sigmoid activations), as written. Reading note: the first code block ends
# with `model.add(MaxPooling2D(pool_size=(2, 2)))` and the next one begins with the same line;
# an exact repeat across a block boundary is a page-rendering artifact, so it is kept once.

model = Sequential()

model.add(Conv2D(32, kernel_size=(7, 7), activation='sigmoid', input_shape=input_shape, padding='same'))
model.add(MaxPooling2D(pool_size=(2, 2)))
model.add(Dropout(0.25))

model.add(Conv2D(42, (7, 7), activation='sigmoid', padding='same'))
model.add(BatchNormalization())
model.add(MaxPooling2D(pool_size=(2, 2)))
# model.add(Dropout(0.25))

model.add(Conv2D(32, (7, 7), activation='sigmoid', padding='same'))
model.add(BatchNormalization())
# model.add(MaxPooling2D(pool_size=(2, 2)))
# model.add(Dropout(0.25))

model.add(Conv2D(70, (7, 7), activation='sigmoid', padding='same'))
model.add(BatchNormalization())
# model.add(MaxPooling2D(pool_size=(2, 2)))
# model.add(Dropout(0.25))

model.add(Conv2D(23, (7, 7), activation='sigmoid', padding='same'))
model.add(BatchNormalization())
# model.add(MaxPooling2D(pool_size=(2, 2)))
model.add(Dropout(0.20))

model.add(Conv2D(11, (7, 7), activation='sigmoid', padding='same'))
model.add(BatchNormalization())
model.add(MaxPooling2D(pool_size=(2, 2)))
model.add(Dropout(0.5))

model.add(Conv2D(11, (7, 7), activation='sigmoid',padding='same'))

model.add(Flatten())
model.add(Dense(128, activation='sigmoid'))
model.add(Dropout(0.5))
model.add(Dense(num_classes, activation='softmax'))

model.compile(loss=keras.losses.categorical_crossentropy,
              optimizer=keras.optimizers.Adadelta(),
              metrics=['accuracy'])
