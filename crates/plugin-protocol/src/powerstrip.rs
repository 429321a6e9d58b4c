//! Powerstrip-shaped api hook messages, the body of the MVP `api` extension point
//! (`/v1/api/pre-hook`, `/v1/api/post-hook`, and the v2 equivalents).
//!
//! Pre-hook: `{"PowerstripProtocolVersion": 1, "Type": "pre-hook", "ClientRequest": {Method, Request,
//! Body}}` → `{"PowerstripProtocolVersion": 1, "ModifiedClientRequest": {Method, Request, Body}}`.
//! Post-hook adds `ServerResponse: {ContentType, Body, Code}` → `ModifiedServerResponse`. `Body` is a
//! JSON *string* (the raw body text) for `application/json` bodies and `null` otherwise.

use serde::{Deserialize, Serialize};

/// Value of `PowerstripProtocolVersion`.
pub const POWERSTRIP_PROTOCOL_VERSION: u32 = 1;

/// The client's request as seen by a hook.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientRequest {
    /// HTTP method.
    #[serde(rename = "Method")]
    pub method: String,
    /// Path with the query (`/v1.47/containers/create?name=web`).
    #[serde(rename = "Request")]
    pub request: String,
    /// Body text for JSON bodies, else `None`.
    #[serde(rename = "Body")]
    pub body: Option<String>,
}

/// The engine's response as seen by a post-hook.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerResponse {
    /// Response Content-Type.
    #[serde(rename = "ContentType")]
    pub content_type: String,
    /// Body text for JSON bodies, else `None`.
    #[serde(rename = "Body")]
    pub body: Option<String>,
    /// HTTP status.
    #[serde(rename = "Code")]
    pub code: u16,
}

/// Hook kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HookType {
    /// Before the handler.
    #[serde(rename = "pre-hook")]
    PreHook,
    /// After the handler.
    #[serde(rename = "post-hook")]
    PostHook,
}

/// Request sent to a hook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookRequest {
    /// Always 1.
    #[serde(rename = "PowerstripProtocolVersion", default)]
    pub protocol_version: u32,
    /// `pre-hook` or `post-hook`.
    #[serde(rename = "Type")]
    pub hook_type: HookType,
    /// The (possibly already rewritten) client request.
    #[serde(rename = "ClientRequest")]
    pub client_request: ClientRequest,
    /// Post-hooks only: the (possibly already rewritten) response.
    #[serde(
        rename = "ServerResponse",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub server_response: Option<ServerResponse>,
}

impl HookRequest {
    /// A pre-hook request.
    pub fn pre(client_request: ClientRequest) -> Self {
        Self {
            protocol_version: POWERSTRIP_PROTOCOL_VERSION,
            hook_type: HookType::PreHook,
            client_request,
            server_response: None,
        }
    }

    /// A post-hook request.
    pub fn post(client_request: ClientRequest, server_response: ServerResponse) -> Self {
        Self {
            protocol_version: POWERSTRIP_PROTOCOL_VERSION,
            hook_type: HookType::PostHook,
            client_request,
            server_response: Some(server_response),
        }
    }
}

/// Reply of a pre-hook. A missing `ModifiedClientRequest` leaves the request unchanged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PreHookReply {
    /// Always 1.
    #[serde(rename = "PowerstripProtocolVersion")]
    pub protocol_version: u32,
    /// Optional echo of the hook type; when present it must be `pre-hook`.
    #[serde(rename = "Type", skip_serializing_if = "Option::is_none")]
    pub hook_type: Option<String>,
    /// The request to pass on.
    #[serde(rename = "ModifiedClientRequest")]
    pub modified_client_request: Option<ClientRequest>,
}

/// Reply of a post-hook. A missing `ModifiedServerResponse` leaves the response unchanged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PostHookReply {
    /// Always 1.
    #[serde(rename = "PowerstripProtocolVersion")]
    pub protocol_version: u32,
    /// Optional echo of the hook type; when present it must be `post-hook`.
    #[serde(rename = "Type", skip_serializing_if = "Option::is_none")]
    pub hook_type: Option<String>,
    /// The response to pass on.
    #[serde(rename = "ModifiedServerResponse")]
    pub modified_server_response: Option<ServerResponse>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pre_hook_wire_shape() {
        let r = HookRequest::pre(ClientRequest {
            method: "POST".into(),
            request: "/v1.16/containers/create?name=web".into(),
            body: Some("{\"Image\":\"nginx\"}".into()),
        });
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"PowerstripProtocolVersion": 1, "Type": "pre-hook",
                   "ClientRequest": {"Method": "POST", "Request": "/v1.16/containers/create?name=web",
                                     "Body": "{\"Image\":\"nginx\"}"}})
        );
        let reply: PostHookReply = serde_json::from_value(json!({"PowerstripProtocolVersion": 1,
            "ModifiedServerResponse": {"ContentType": "application/json", "Body": null, "Code": 201}})).unwrap();
        assert_eq!(reply.modified_server_response.unwrap().code, 201);
    }
}
