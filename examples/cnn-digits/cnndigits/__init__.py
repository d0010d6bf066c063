"""cnndigits: a Flower App (CNN on 8x8 digit images) with flchain's on-chain accounting."""
