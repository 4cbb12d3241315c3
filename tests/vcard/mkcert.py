"""Issues a certificate for the card's signing key from a throwaway test CA, as a card issuer
would: mkcert.py PUBKEY.der CN EMAIL CERT.der CA.pem"""

import datetime
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

pub_path, cn, email, cert_path, ca_path = sys.argv[1:]
public_key = serialization.load_der_public_key(open(pub_path, "rb").read())
ca_key = ec.generate_private_key(ec.SECP256R1())
ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tokenroll test card CA")])
now = datetime.datetime.now(datetime.timezone.utc)
ca = (
    x509.CertificateBuilder()
    .subject_name(ca_name)
    .issuer_name(ca_name)
    .public_key(ca_key.public_key())
    .serial_number(x509.random_serial_number())
    .not_valid_before(now - datetime.timedelta(hours=1))
    .not_valid_after(now + datetime.timedelta(days=3650))
    .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    .sign(ca_key, hashes.SHA256())
)
cert = (
    x509.CertificateBuilder()
    .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
    .issuer_name(ca_name)
    .public_key(public_key)
    .serial_number(x509.random_serial_number())
    .not_valid_before(now - datetime.timedelta(hours=1))
    .not_valid_after(now + datetime.timedelta(days=365))
    .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
    .add_extension(
        x509.KeyUsage(
            digital_signature=True, content_commitment=True, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False,
            crl_sign=False, encipher_only=False, decipher_only=False,
        ),
        critical=True,
    )
    .sign(ca_key, hashes.SHA256())
)
open(cert_path, "wb").write(cert.public_bytes(serialization.Encoding.DER))
open(ca_path, "wb").write(ca.public_bytes(serialization.Encoding.PEM))
