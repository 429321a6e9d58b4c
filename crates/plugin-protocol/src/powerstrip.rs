//! Powerstrip-shaped api hook messages, the body of the MVP `api` extension point
//! (`/v1/api/pre-hook`, `/v1/api/post-hook`, and the v2 equivalents).
//!
//! Pre-hook: `{"PowerstripProtocolVersion": 1, "Type": "pre-hook", "ClientRequest": {Method, Request,
//! Body}}` → `{"PowerstripProtocolVersion": 1, "ModifiedClientRequest": {Method, Request, Body}}`.
//! Post-hook adds `ServerResponse: {ContentType, Body, Code}` → `ModifiedServerResponse`. `Body` is a
//! JSON *string* (the raw body text) for `application/json` bodies and `null` otherwise.
//!
//! Berth's additive form ([`BodyForm::Json`]): a v2 plugin that sets `Subscriptions.api.BodyJSON`
//! is sent a JSON body as the JSON value itself in `BodyJSON` (no escaping inside a string, no
//! unescaping on either side), and may answer in either form. A reply without `Modified…` leaves
//! the request or response unchanged.

use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// Value of `PowerstripProtocolVersion`.
pub const POWERSTRIP_PROTOCOL_VERSION: u32 = 1;

/// How a JSON body travels in a hook message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BodyForm {
    /// Powerstrip's: the body text as a JSON string in `Body`.
    #[default]
    Text,
    /// Berth's additive form: the body as a JSON value in `BodyJSON` (a body that is not valid
    /// JSON still goes as text in `Body`).
    Json,
}

/// The client's request as seen by a hook.
///
/// Equality ignores [`Self::body_form`]: the same request in either wire form is the same request.
#[derive(Debug, Clone, Default)]
pub struct ClientRequest {
    /// HTTP method (`Method`).
    pub method: String,
    /// Path with the query (`Request`: `/v1.47/containers/create?name=web`).
    pub request: String,
    /// Body text for JSON bodies, else `None` (`Body`, or `BodyJSON` in the JSON form).
    pub body: Option<String>,
    /// The form the body came in (decoding) or goes out in (encoding).
    pub body_form: BodyForm,
}

impl PartialEq for ClientRequest {
    fn eq(&self, other: &Self) -> bool {
        self.method == other.method && self.request == other.request && self.body == other.body
    }
}

/// The engine's response as seen by a post-hook.
///
/// Equality ignores [`Self::body_form`], as for [`ClientRequest`].
#[derive(Debug, Clone, Default)]
pub struct ServerResponse {
    /// Response Content-Type (`ContentType`).
    pub content_type: String,
    /// Body text for JSON bodies, else `None` (`Body`, or `BodyJSON` in the JSON form).
    pub body: Option<String>,
    /// HTTP status (`Code`).
    pub code: u16,
    /// The form the body came in (decoding) or goes out in (encoding).
    pub body_form: BodyForm,
}

impl PartialEq for ServerResponse {
    fn eq(&self, other: &Self) -> bool {
        self.content_type == other.content_type
            && self.body == other.body
            && self.code == other.code
    }
}

/// Writes the body field: `BodyJSON` (the value itself) in the JSON form when the text is valid
/// JSON, `Body` (the text as a string, or `null`) otherwise.
fn body_field<S: SerializeStruct>(
    s: &mut S,
    body: Option<&str>,
    form: BodyForm,
) -> Result<(), S::Error> {
    if form == BodyForm::Json
        && let Some(text) = body
        && let Ok(raw) = serde_json::from_str::<&RawValue>(text)
    {
        return s.serialize_field("BodyJSON", raw);
    }
    s.serialize_field("Body", &body)
}

/// A [`ClientRequest`] serialised in a chosen [`BodyForm`] (the engine picks it per plugin).
pub struct ClientRequestAs<'a>(pub &'a ClientRequest, pub BodyForm);

impl Serialize for ClientRequestAs<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("ClientRequest", 3)?;
        s.serialize_field("Method", &self.0.method)?;
        s.serialize_field("Request", &self.0.request)?;
        body_field(&mut s, self.0.body.as_deref(), self.1)?;
        s.end()
    }
}

impl Serialize for ClientRequest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ClientRequestAs(self, self.body_form).serialize(serializer)
    }
}

/// A [`ServerResponse`] serialised in a chosen [`BodyForm`].
pub struct ServerResponseAs<'a>(pub &'a ServerResponse, pub BodyForm);

impl Serialize for ServerResponseAs<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("ServerResponse", 3)?;
        s.serialize_field("ContentType", &self.0.content_type)?;
        body_field(&mut s, self.0.body.as_deref(), self.1)?;
        s.serialize_field("Code", &self.0.code)?;
        s.end()
    }
}

impl Serialize for ServerResponse {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ServerResponseAs(self, self.body_form).serialize(serializer)
    }
}

/// `BodyJSON` present (even as `null`, which is then the body text `null`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

/// The body of a decoded message: from `BodyJSON` (already parsed as JSON) or `Body`; both at
/// once is refused (which one would the sender mean?).
fn decoded_body<E: serde::de::Error>(
    body: Option<String>,
    body_json: Option<Box<RawValue>>,
) -> Result<(Option<String>, BodyForm), E> {
    match (body, body_json) {
        (Some(_), Some(_)) => Err(E::custom("both Body and BodyJSON are set")),
        (None, Some(raw)) => Ok((Some(Box::<str>::from(raw).into_string()), BodyForm::Json)),
        (body, None) => Ok((body, BodyForm::Text)),
    }
}

#[derive(Deserialize)]
#[serde(default)]
#[derive(Default)]
struct ClientRequestWire {
    #[serde(rename = "Method")]
    method: String,
    #[serde(rename = "Request")]
    request: String,
    #[serde(rename = "Body")]
    body: Option<String>,
    #[serde(rename = "BodyJSON", deserialize_with = "present")]
    body_json: Option<Box<RawValue>>,
}

impl<'de> Deserialize<'de> for ClientRequest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = ClientRequestWire::deserialize(d)?;
        let (body, body_form) = decoded_body::<D::Error>(w.body, w.body_json)?;
        Ok(Self {
            method: w.method,
            request: w.request,
            body,
            body_form,
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ServerResponseWire {
    #[serde(rename = "ContentType")]
    content_type: String,
    #[serde(rename = "Body")]
    body: Option<String>,
    #[serde(rename = "BodyJSON", deserialize_with = "present")]
    body_json: Option<Box<RawValue>>,
    #[serde(rename = "Code")]
    code: u16,
}

impl<'de> Deserialize<'de> for ServerResponse {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = ServerResponseWire::deserialize(d)?;
        let (body, body_form) = decoded_body::<D::Error>(w.body, w.body_json)?;
        Ok(Self {
            content_type: w.content_type,
            body,
            code: w.code,
            body_form,
        })
    }
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

impl PreHookReply {
    /// The reply that passes the request on unchanged, already encoded: what a `PreHookReply`
    /// with only the protocol version encodes to. A plugin can send it as it is.
    pub const UNCHANGED_JSON: &'static [u8] =
        br#"{"PowerstripProtocolVersion":1,"ModifiedClientRequest":null}"#;
}

impl PostHookReply {
    /// The reply that passes the response on unchanged, already encoded (see
    /// [`PreHookReply::UNCHANGED_JSON`]).
    pub const UNCHANGED_JSON: &'static [u8] =
        br#"{"PowerstripProtocolVersion":1,"ModifiedServerResponse":null}"#;
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
            body_form: BodyForm::Text,
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

    #[test]
    fn json_body_form_sends_the_value_and_reads_either_form() {
        let body = r#"{"Image":"nginx","Cmd":["echo","a \"quoted\" word"]}"#;
        let req = ClientRequest {
            method: "POST".into(),
            request: "/v1.50/containers/create".into(),
            body: Some(body.into()),
            body_form: BodyForm::Text,
        };
        // The JSON form carries the value itself, unescaped, and no `Body`.
        let wire = serde_json::to_string(&ClientRequestAs(&req, BodyForm::Json)).unwrap();
        assert_eq!(
            wire,
            format!(
                r#"{{"Method":"POST","Request":"/v1.50/containers/create","BodyJSON":{body}}}"#
            )
        );
        let back: ClientRequest = serde_json::from_str(&wire).unwrap();
        assert_eq!(back, req);
        assert_eq!(back.body_form, BodyForm::Json);
        assert_eq!(
            back.body.as_deref(),
            Some(body),
            "the text is kept byte for byte"
        );
        // Powerstrip's form is unchanged.
        let text = serde_json::to_value(&req).unwrap();
        assert_eq!(text["Body"], json!(body));
        assert!(text.get("BodyJSON").is_none());
        let back: ClientRequest = serde_json::from_value(text).unwrap();
        assert_eq!(back.body_form, BodyForm::Text);
        assert_eq!(back, req);
    }

    #[test]
    fn json_body_form_edge_cases() {
        // Text that is not JSON still goes, as text.
        let resp = ServerResponse {
            content_type: "application/json".into(),
            body: Some("not json".into()),
            code: 200,
            body_form: BodyForm::Json,
        };
        assert_eq!(serde_json::to_value(&resp).unwrap()["Body"], "not json");
        // A body that is the JSON value `null` is a body, not "no body".
        let r: ServerResponse = serde_json::from_str(
            r#"{"ContentType":"application/json","BodyJSON":null,"Code":200}"#,
        )
        .unwrap();
        assert_eq!(r.body.as_deref(), Some("null"));
        // No body at all.
        let none = ServerResponse {
            body: None,
            ..resp.clone()
        };
        assert_eq!(serde_json::to_value(&none).unwrap()["Body"], json!(null));
        // Both forms at once are refused.
        let both = serde_json::from_str::<ClientRequest>(
            r#"{"Method":"GET","Request":"/version","Body":"{}","BodyJSON":{}}"#,
        );
        assert!(
            both.unwrap_err()
                .to_string()
                .contains("both Body and BodyJSON")
        );
        // Equality ignores the form.
        let a = ServerResponse {
            body: Some("{}".into()),
            ..resp.clone()
        };
        let b = ServerResponse {
            body_form: BodyForm::Text,
            ..a.clone()
        };
        assert_eq!(a, b);
    }

    #[test]
    fn the_unchanged_replies_are_what_the_reply_types_encode_to() {
        let pre = PreHookReply {
            protocol_version: POWERSTRIP_PROTOCOL_VERSION,
            ..PreHookReply::default()
        };
        assert_eq!(
            serde_json::to_vec(&pre).unwrap(),
            PreHookReply::UNCHANGED_JSON
        );
        let post = PostHookReply {
            protocol_version: POWERSTRIP_PROTOCOL_VERSION,
            ..PostHookReply::default()
        };
        assert_eq!(
            serde_json::to_vec(&post).unwrap(),
            PostHookReply::UNCHANGED_JSON
        );
    }
}
