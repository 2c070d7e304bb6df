"""Plain nn.Modules (encoders, decoders, generators, discriminators), sized from the image shape."""
