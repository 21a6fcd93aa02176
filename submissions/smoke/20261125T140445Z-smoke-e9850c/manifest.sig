{
 "algorithm": "ed25519",
 "key_fingerprint": "SHA256:cfff1f7d03079a3ace5f017a644cff02",
 "public_key": "c3216dc2b758c6779a4125c8fb2e1a65a4fcb995f2ac5fc62ab8ddba621808ae",
 "signature": "b1b459e96975b710d3564aed29b14a897bfdee18a9e18e3ef76fc545ccd42d9bcff6447011c3534288b46ea49e2666fdebfaad268ad81374a2682c9c8d575a00",
 "signed_file": "manifest.json"
}
