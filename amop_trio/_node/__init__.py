"""The AMOP node: accepts SDK connections and routes messages between them."""
