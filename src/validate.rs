//! Normalization and validation of source records against the Concur field rules.
