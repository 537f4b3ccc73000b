//! The AWS SDK configuration every AWS executor (Batch, Lambda) starts from: the standard
//! environment (variables, profile, role; `AWS_ENDPOINT_URL_<SERVICE>` or `AWS_ENDPOINT_URL`
//! for a stand-in), checked before a build starts so that neither a missing region nor
//! unusable credentials fail it halfway.
//!
//! Owns: loading and checking that configuration. Must not touch: any service's client.

use aws_config::SdkConfig;
use aws_credential_types::provider::ProvideCredentials;
use aws_smithy_types::error::display::DisplayErrorContext;

/// Why the AWS configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AwsConfigError {
    #[error("no AWS region: set AWS_REGION (or a region in the AWS profile)")]
    NoRegion,
    #[error(
        "no AWS credentials ({reason}): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run \
         with a role"
    )]
    Credentials { reason: String },
}

/// The configuration `loader` gives, with a region and credentials that resolve.
pub async fn load(loader: aws_config::ConfigLoader) -> Result<SdkConfig, AwsConfigError> {
    let config = loader.load().await;
    if config.region().is_none() {
        return Err(AwsConfigError::NoRegion);
    }
    let provider = config
        .credentials_provider()
        .ok_or_else(|| AwsConfigError::Credentials { reason: "no credentials provider is configured".into() })?;
    provider
        .provide_credentials()
        .await
        .map_err(|e| AwsConfigError::Credentials { reason: DisplayErrorContext(&e).to_string() })?;
    Ok(config)
}
