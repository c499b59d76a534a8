//! API tokens (family `tokens`, keyed by name): who may call reeld. Only a
//! token's SHA-256 is kept; the secret is shown once, when it is made.

use prost::Message;
use reel_proto::v1::TokenRow;
use rocksdb::IteratorMode;

use crate::{Batch, CF_TOKENS, Catalog, Result, cf_handle, decode};

impl Batch {
    /// Adds or replaces the token named `row.name`.
    pub fn put_token(&mut self, row: &TokenRow) -> &mut Self {
        self.put(CF_TOKENS, row.name.as_bytes().to_vec(), row.encode_to_vec())
    }

    pub fn delete_token(&mut self, name: &str) -> &mut Self {
        self.delete(CF_TOKENS, name.as_bytes().to_vec())
    }
}

impl Catalog {
    /// Every token, by name.
    pub fn tokens(&self) -> Result<Vec<TokenRow>> {
        self.with_db(|db| {
            let mut out = Vec::new();
            for item in db.iterator_cf(cf_handle(db, CF_TOKENS), IteratorMode::Start) {
                let (k, v) = item?;
                out.push(decode(&k, &v)?);
            }
            Ok(out)
        })
    }

    pub fn token(&self, name: &str) -> Result<Option<TokenRow>> {
        self.get(CF_TOKENS, name.as_bytes())
    }
}
