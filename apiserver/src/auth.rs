//! Bearer-token authentication from a static token file, kube-apiserver's `--token-auth-file`
//! format: one `token,user,uid,"group1,group2"` line per user.

use std::collections::HashMap;
use std::path::Path;

/// Who a token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// User name (`admin`).
    pub name: String,
    /// Groups (`system:masters`).
    pub groups: Vec<String>,
}

/// The known tokens.
#[derive(Debug, Default)]
pub struct TokenAuth {
    tokens: HashMap<String, User>,
}

impl TokenAuth {
    /// Parses a token file's contents; malformed lines are reported with their number.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut tokens = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.splitn(4, ',');
            let token = fields.next().unwrap_or("").trim();
            let name = fields.next().unwrap_or("").trim();
            let _uid = fields.next();
            let groups = fields
                .next()
                .unwrap_or("")
                .trim_matches('"')
                .split(',')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(String::from)
                .collect();
            if token.is_empty() || name.is_empty() {
                anyhow::bail!("token file line {}: expected token,user,uid[,\"groups\"]", i + 1);
            }
            tokens.insert(token.to_string(), User { name: name.to_string(), groups });
        }
        Ok(Self { tokens })
    }

    /// Loads a token file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        Self::parse(&text)
    }

    /// The user a token belongs to.
    pub fn user(&self, token: &str) -> Option<&User> {
        self.tokens.get(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file() {
        let a = TokenAuth::parse("# comment\nsecret,admin,admin,\"system:masters,x\"\nt2,bob,2\n").unwrap();
        assert_eq!(a.user("secret").unwrap().groups, ["system:masters", "x"]);
        assert_eq!(a.user("t2").unwrap().name, "bob");
        assert!(a.user("nope").is_none());
        assert!(TokenAuth::parse(",x").is_err());
    }
}
