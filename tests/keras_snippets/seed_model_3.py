# Seed notebook, "Model-3: 3 Conv-Layers, dropout, Max-pooling with 7*7 kernel", as written.
# Reading notes: the first Conv2D line is cut at the page edge (`padding='sa`): it is 'same'.
# The compile call is split over two code blocks, joined; this model is compiled with Adam.

model = Sequential()

model.add(Conv2D(32, kernel_size=(7, 7),activation='relu',input_shape=input_shape,padding='same'))
model.add(MaxPooling2D(pool_size=(2, 2)))
model.add(Dropout(0.25))

model.add(Conv2D(64, (7, 7), activation='relu',padding='same'))
model.add(MaxPooling2D(pool_size=(2, 2)))
model.add(Dropout(0.25))

model.add(Conv2D(84, (7, 7), activation='relu',padding='same'))
model.add(MaxPooling2D(pool_size=(2, 2)))
model.add(Dropout(0.75))

model.add(Flatten())
model.add(Dense(128, activation='relu'))
model.add(Dropout(0.5))
model.add(Dense(num_classes, activation='softmax'))

model.compile(loss=keras.losses.categorical_crossentropy,
optimizer=keras.optimizers.Adam(),
metrics=['accuracy'])
