// placeholder for pb-rs output
