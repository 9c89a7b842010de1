# Seed notebook, "Model-6: 5 Conv-Layers, dropout, Max-pooling with 7*7 kernel", as written.
# Reading note: the first code block ends with `model.add(Dense(128, activation='relu'))` and
# the next one begins with the same line; an exact repeat across a block boundary is a
# page-rendering artifact, so it is kept once.

model = Sequential()

model.add(Conv2D(32, kernel_size=(7, 7),activation='relu',input_shape=input_shape,padding='same'))
model.add(MaxPooling2D(pool_size=(2, 2)))
model.add(Dropout(0.25))

model.add(Conv2D(42, (7, 7), activation='relu',padding='same'))
model.add(MaxPooling2D(pool_size=(2, 2)))
model.add(Dropout(0.25))

model.add(Conv2D(52, (7, 7), activation='relu',padding='same'))
model.add(MaxPooling2D(pool_size=(2, 2)))
model.add(Dropout(0.25))

model.add(Conv2D(62, (7, 7), activation='relu',padding='same'))
model.add(MaxPooling2D(pool_size=(2, 2)))
model.add(Dropout(0.25))

model.add(Conv2D(72, (7, 7), activation='relu',padding='same'))
# model.add(MaxPooling2D(pool_size=(2, 2)))
model.add(Dropout(0.75))

model.add(Flatten())
model.add(Dense(128, activation='relu'))
model.add(Dropout(0.5))
model.add(Dense(num_classes, activation='softmax'))

model.compile(loss=keras.losses.categorical_crossentropy,
              optimizer=keras.optimizers.Adadelta(),
              metrics=['accuracy'])
