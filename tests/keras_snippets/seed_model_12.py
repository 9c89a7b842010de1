# Seed notebook, "Model-12: 4 Conv-Layers, dropout, Max-pooling with 4*4 kernel with Ba[tch
# normalization]" (sigmoid activations), as written. Two code blocks, joined; commented-out
# lines are no layers.

model = Sequential()

model.add(Conv2D(32, kernel_size=(4, 4),activation='sigmoid',input_shape=input_shape,padding='same'))
model.add(MaxPooling2D(pool_size=(2, 2)))
model.add(Dropout(0.25))

model.add(Conv2D(42, (4, 4), activation='sigmoid',padding='same'))
model.add(BatchNormalization())
model.add(MaxPooling2D(pool_size=(2, 2)))
# model.add(Dropout(0.25))

model.add(Conv2D(32, (4, 4), activation='sigmoid',padding='same'))
model.add(BatchNormalization())
# model.add(MaxPooling2D(pool_size=(2, 2)))
# model.add(Dropout(0.25))

model.add(Conv2D(70, (4, 4), activation='sigmoid',padding='same'))
model.add(BatchNormalization())
# model.add(MaxPooling2D(pool_size=(2, 2)))
# model.add(Dropout(0.25))

model.add(Flatten())
model.add(Dense(128, activation='sigmoid'))
model.add(Dropout(0.5))
model.add(Dense(num_classes, activation='softmax'))

model.compile(loss=keras.losses.categorical_crossentropy,
              optimizer=keras.optimizers.Adadelta(),
              metrics=['accuracy'])
