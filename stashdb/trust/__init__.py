"""Who wrote a snapshot, and whether its bytes are what they signed (docs/security.md).

`keys`: the user's signing key, the keys they trust, the ones revoked.
`signing`: what a commit's signature covers, and checking one. Imports
`cryptography` only when a key is used.
"""
