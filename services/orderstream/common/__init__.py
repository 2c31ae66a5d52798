"""The shared library of every Orderstream service: settings, Avro codec, topics, service template."""
