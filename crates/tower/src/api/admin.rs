//! Administration (docs/api.md): API tokens and the rotation of the signing key.

use super::*;

/// The body of `POST /api/v1/tokens`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub role: Role,
    /// The holder's identity (default `<role>-<6 hex>`).
    pub name: Option<String>,
}

/// A token just made; `token` is shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    pub token: String,
    #[serde(flatten)]
    pub info: TokenInfo,
}

/// Makes an API token (admin only).
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", security(("token" = [])),
    request_body(content = NewToken, content_type = "application/json"),
    responses((status = 201, body = CreatedToken), (status = 403, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn create_token(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(
    StatusCode,
    [(header::HeaderName, HeaderValue); 1],
    Json<CreatedToken>,
)> {
    let actor = require(&caller, Action::ManageTokens)?;
    let v = json_body(&headers, body, s.config.limits.max_body_bytes)?;
    let req: NewToken = typed_body(
        v,
        "{\"role\": \"author\"|\"approver\"|\"admin\", \"name\"?: \"...\"}",
    )?;
    let token = crate::auth::new_secret()?;
    let info = s
        .store
        .create_token(
            req.role,
            req.name.as_deref(),
            &token,
            &actor.name,
            s.clock.now(),
        )
        .await?;
    // The answer carries a secret: no cache (browser, proxy) may keep it.
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(CreatedToken { token, info }),
    ))
}

/// Every token (never their secrets; admin only).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", security(("token" = [])),
    responses((status = 200, body = [TokenInfo]), (status = 403, body = ErrorBody)))]
pub(super) async fn list_tokens(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<TokenInfo>>> {
    require(&caller, Action::ManageTokens)?;
    Ok(Json(s.store.list_tokens().await?))
}

// ---------------------------------------------------------------- signing keys

/// The signing key and, during a rotation, its announced successor (never their secrets).
#[utoipa::path(get, path = "/api/v1/keys", tag = "keys", security(("token" = [])),
    responses((status = 200, body = KeyStatus), (status = 401, body = ErrorBody)))]
pub(super) async fn list_keys(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<KeyStatus>> {
    require(&caller, Action::Read)?;
    Ok(Json(crate::keys::status(&s).await?))
}

/// What `POST /api/v1/keys/rotate` takes: the successor's public key when its seed is kept
/// outside the database; without it, the tower makes one and keeps it in the database.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    /// Standard base64 of the successor's 32-byte public key.
    #[serde(rename = "publicKey")]
    pub public_key: Option<String>,
}

/// Proposes a rotation of the signing key: the index announces the successor as `nextKey`
/// (and its serial grows). A different person completes it.
#[utoipa::path(post, path = "/api/v1/keys/rotate", tag = "keys", security(("token" = [])),
    request_body(content = Option<RotateBody>, content_type = "application/json"),
    responses((status = 200, body = KeyStatus), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn rotate_key(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<KeyStatus>> {
    let (actor, body) = action_request::<RotateBody>(
        &s,
        &caller,
        Action::RotateKey,
        &headers,
        body,
        "{\"publicKey\"?: \"<base64 of 32 bytes>\"}",
    )?;
    let successor = match &body.public_key {
        Some(k) => Some(testpilot_flight::index::parse_public_key(k).map_err(|e| {
            ApiError::at(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the body is not valid",
                "publicKey",
                e.to_string(),
            )
        })?),
        None => None,
    };
    Ok(Json(crate::keys::propose(&s, actor, successor).await?))
}

/// Completes the pending rotation: the tower signs with the successor from now on (and the
/// serial grows). Needs someone other than the person who proposed it.
#[utoipa::path(post, path = "/api/v1/keys/rotate/complete", tag = "keys", security(("token" = [])),
    responses((status = 200, body = KeyStatus), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub(super) async fn complete_rotation(
    State(s): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<KeyStatus>> {
    let actor = require(&caller, Action::RotateKey)?;
    Ok(Json(crate::keys::complete(&s, actor).await?))
}
