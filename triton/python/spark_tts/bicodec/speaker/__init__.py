"""The BiCodec speaker encoder: ECAPA-TDNN, perceiver and residual FSQ."""
