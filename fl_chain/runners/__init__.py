"""Process supervision for the server, a node and a validator: starting Flower's processes and stopping
them.
"""
